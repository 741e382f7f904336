"""bench/compare as a module, for the other bench scripts (bench/scale,
bench/publish-path): its process control, /proc readers and HTTP helpers.
bench/compare has no .py suffix (it is run as a command), so it is loaded
from its path."""
import importlib.machinery
import importlib.util
import os


def load():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare")
    loader = importlib.machinery.SourceFileLoader("rc_compare", path)
    spec = importlib.util.spec_from_loader("rc_compare", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod
