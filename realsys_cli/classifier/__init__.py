"""`realsys train-classifier`, `evaluate` and `classify`: AlexNet and friends."""
