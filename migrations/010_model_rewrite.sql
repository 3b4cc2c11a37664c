-- Models prescore rewrote at registration (a classifier's ZipMap removed so its probabilities are a
-- tensor): the stored onnx and sha256 are the rewritten bytes; these say from which bytes
-- (rewritten_from: the sha256 of the file as exported) and what was done.
ALTER TABLE prescore.models ADD COLUMN rewritten_from text;
ALTER TABLE prescore.models ADD COLUMN rewrite text;
