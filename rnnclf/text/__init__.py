"""Text to numbers: tokenizers (torchtext-exact, and the Arrow path in fasttokens), the Vocab, encoding
(text -> ids, the one way) and pretrained word vectors.

May import config, errors, batching and runtime. Never imports models, training or inference.
"""
