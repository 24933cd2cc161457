"""Metrics over (confidence, correct) pairs and evaluation rows: calibration (`calibration`) and paired
before/after comparisons with bootstrap intervals (`paired`). numpy only: training and evaluation
both import them."""
