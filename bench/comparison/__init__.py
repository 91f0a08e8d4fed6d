"""The side-by-side suite of ``bench/compare``: see ``__main__``."""
