"""`realsys predict-frames`: next-frame prediction with a ConvLSTM encoder-forecaster or SimVP."""
