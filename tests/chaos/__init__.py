"""The chaos suite (issue 15): the whole stack under faults, every promise counted afterwards."""
