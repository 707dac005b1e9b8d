"""Drop-in replacements for the classes of toolkits prodfast grew out of."""
