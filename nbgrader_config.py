# Stock nbgrader reads this file; everything lives in course_config.py, found beside this file
# even when another config loads this one (an instructor's ~/.jupyter/nbgrader_config.py on a
# hub): traitlets would look for a bare name beside the *first* file, and skip it silently.
import os.path  # noqa: E402

load_subconfig("course_config.py", path=os.path.dirname(os.path.abspath(__file__)))  # noqa: F821
