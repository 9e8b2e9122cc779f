"""embstore: an embedding feature store with lightweight classifiers.

    from embstore import Store
    store = Store.open("my.store")
    store.ingest("questions.csv", "trec", text_column="text")
    store.fit("trec", "label", "topic")
    store.search("trec", "where is the eiffel tower", k=5)
    store.sql("SELECT label, count(*) FROM trec GROUP BY label").df()

Heavy libraries (torch, faiss, sentence-transformers, open_clip) are imported only by the functions that need them.
"""
from .errors import (DamagedStoreError, EmbstoreError, EncoderError, InputError, LabelError, NotFoundError,
                     ReadOnlyError, SpaceMismatchError, StoreLockedError, StoreWriteError)
from .store import Store

__version__ = "0.1.0"
__all__ = ["Store", "EmbstoreError", "EncoderError", "InputError", "LabelError", "NotFoundError", "ReadOnlyError",
           "SpaceMismatchError", "StoreLockedError", "DamagedStoreError", "StoreWriteError", "__version__"]
