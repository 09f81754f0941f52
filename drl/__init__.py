"""drl: the Distortion Residual Level (DRL) metric and loss, BS.1770-4 loudness and true peak. Torch only."""
