"""The pure-Python twin of prodfast._core: the same names, behaviour and error messages."""
