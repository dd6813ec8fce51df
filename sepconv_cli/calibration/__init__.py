"""Pure calibration: the normal-equation refit and the layer loop every backend driver feeds."""
