"""Training: ``build`` (envs, agent, experience from a config), ``loops`` (``train_online``,
``train_offline``), ``collector`` (the collect step), ``evaluation``, ``run_state`` (the whole checkpoint),
``recording`` (whole episodes into datasets: ``rlkit collect``, ``rlkit dataset from-run``)."""
