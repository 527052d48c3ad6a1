"""Fuzz targets shared by the atheris harnesses and the regression tests."""
