"""The shared training core: devices and sharding, optimizers, checkpoints, the loop, metrics.

Used by every job (classifier, GAN, frame predictor); each job supplies its model, its jitted
step and its evaluation, and the core does the rest the same way for all of them.
"""
