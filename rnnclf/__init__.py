"""rnnclf: train, evaluate and serve recurrent document classifiers from one YAML file."""

import warnings

# torch warns at import when NumPy is absent; rnnclf never needs NumPy, so the warning is noise.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

__version__ = "0.2.0"
