"""The filesystem: pyfuse3 operations over the SMB client (only this package imports
pyfuse3, besides the mount entry point)."""
