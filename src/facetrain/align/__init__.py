"""Find faces (MTCNN) and align them: 5-point similarity transform or box + margin crop."""

from facetrain.align.transform import (
    TEMPLATE_112,
    crop_box,
    select_faces,
    similarity_matrix,
    warp_similarity,
)

__all__ = ["TEMPLATE_112", "crop_box", "select_faces", "similarity_matrix", "warp_similarity"]
