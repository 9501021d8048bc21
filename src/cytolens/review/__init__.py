"""The review app: a local web app where an expert accepts, relabels, deletes or adds the cells of ranked images."""
