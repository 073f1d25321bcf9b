"""The card program's decisions as pure functions of plain values: no I/O, no framework imports."""
