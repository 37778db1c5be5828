"""One module per source format: folder (LFW layout), lfw (fetch + defaults), celeba, imdb_face; download helpers."""
