"""Preprocessors that course_config.py plugs into stock nbgrader.

`course grade` does not need them (its own executor judges a test by whether it raised), but
instructors who run `nbgrader autograde` directly get the same fairness.
"""
from __future__ import annotations

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor


class DropStderrFromTests(NbGraderPreprocessor):
    """Stock nbgrader gives zero to a test cell with any stderr output (utils.determine_grade),
    so a deprecation warning or a progress bar costs a student points for a passing test. This
    moves stderr text of graded test cells into stdout (the text stays visible); errors still
    fail the test. Place it before SaveAutoGrades."""

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    output["name"] = "stdout"
        return cell, resources
