"""`realsys train-gan` and `realsys sample`: DCGAN (Radford, Metz, Chintala 2015) with FID,
its real-vs-real floor and class coverage measured on a realsys classifier's features.

  config.py   GanConfig          steps.py   the jitted D + G step, the sampler
  judge.py    the classifier FID is measured with       quality.py  the quality report
  fid.py      FID, class coverage                       train.py    train_and_evaluate
  sample.py   sample grids, latent walks, --score       report.py   losses.png, grids
"""
