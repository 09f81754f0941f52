"""tuning: Lightning jobs that tune processor parameters to loudness targets with the least DRL."""
