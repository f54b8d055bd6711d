"""Language representation (Table 3): ALBERT pre-trained from scratch with masked-language
modelling plus sentence-order prediction on WikiText-2 (or the embedded pydoc text).

    task.py     the task's parts for the engine
    text/       corpora, the deterministic WordPiece tokenizer, sentence pairs, masking
    albert.py   ALBERT with an MLM head on the masked positions only
    metrics.py  SOP and MLM accuracy and loss, summed over ranks
"""
