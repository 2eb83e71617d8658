"""The VAE: a pretrained backbone of one of two families, the small layers around it, and its model directory."""
