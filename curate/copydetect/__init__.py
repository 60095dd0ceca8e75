"""Copy detection: a self-supervised copy descriptor (SSCD's recipe at small scale), its training on a run's own
images, and the searches that find near copies in a pool and copies of evaluation images."""
