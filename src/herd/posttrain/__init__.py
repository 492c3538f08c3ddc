"""Post-training (Llama 2 §3, Llama 3 §4): chat data, reward models, SFT, DPO, rejection sampling, PPO.

:mod:`herd.posttrain.data` reads, checks, renders and packs conversations and
preference pairs; :mod:`herd.posttrain.losses` holds the reward-model, DPO and
log-probability math the trainers share.
"""
