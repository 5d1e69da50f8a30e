"""`realsys fool`, `realsys fool-defence` and `realsys fool-screen`: images a classifier is sure of and a person cannot
recognise (Nguyen, Yosinski, Clune, "Deep Neural Networks are Easily Fooled", CVPR 2015).

    config.py   FoolConfig / DefenceConfig
    target.py   the trained classifier, frozen, as a function of pixels in [0, 1]
    ascent.py   gradient ascent on a class logit from noise (the lecture's method)
    evolve.py   MAP-Elites with the direct encoding;  cppn.py  the CPPN encoding
    perturb.py  targeted PGD / FGSM on real test images
    report.py   PNGs, contact sheet, report.json;  run.py  run(cfg, workdir, out) -> dict
    defence.py  retraining with a "fooling" class, K rounds
    screen.py   a GAN's discriminator as a screen for fooling images, and the joint attack
"""
