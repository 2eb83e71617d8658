"""Measuring a model: the field's metrics (`vae evaluate`) and figures of a run (`vae plot`)."""
