"""Model-based document quality: CCNet language ID and perplexity, fastText and embedding classifiers.

CCNet (Wenzek et al. 2019; Llama 1 §2.1) labels each CommonCrawl document
with its language and its perplexity under a Wikipedia n-gram model; Llama 1
then keeps pages a linear classifier deems "used as references in Wikipedia",
and Llama 3 §3.1.1 adds a fastText and a DistilRoBERTa-style quality
classifier. Models load lazily in each worker and are left out of pickles, so
a step built in the parent process travels cheaply to spawned workers.
"""

from typing import Literal

# The classifiers herd data train-classifier trains: wiki_reference's fastText model, embedding_quality's head.
ClassifierKind = Literal["fasttext", "embedding"]
CLASSIFIER_KINDS: tuple[ClassifierKind, ...] = ("fasttext", "embedding")
