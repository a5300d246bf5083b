"""Putting a trained network to work: the saved-model record and its files (`saved`), the
pretrained entries (`pretrained`), imports of peers' checkpoints (`imports`, `dlib_format`),
feeding faces as a model's record says (`feed`) and the one `FaceEmbedder` (`embedder`)
that the library, the Python API, distillation's teacher, `embed`, `compare` and
`classify` detect, align and embed through; photos read by several processes, each with
its own copy of a model (`processes`). `models/` below it knows nothing of files."""
