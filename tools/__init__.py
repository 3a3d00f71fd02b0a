"""Developer tools (training recipes and their parts); the scripts and common/ never import these."""
