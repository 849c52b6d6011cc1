"""Plain sampling: the pipeline from each seed's noise, the baseline every method is compared with."""
