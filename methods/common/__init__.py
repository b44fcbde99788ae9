"""Building blocks shared by method plugins: graphs, layers and losses (not plugins themselves)."""
