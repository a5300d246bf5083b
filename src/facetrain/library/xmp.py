"""Names that leave with the owner: XMP sidecars with MWG face regions (the metadata
digiKam, Lightroom, Immich and ExifTool read), written from the library and read back.

A region is a face's box normalised to 0..1 by the photo's width and height, centred as
MWG says (`stArea:x`, `stArea:y` are the centre), in the photo *as stored*: MWG applies
regions to the stored image, and a viewer turns them with the EXIF orientation as it turns
the pixels (digiKam writes them so). facetrain's boxes are in the upright photo, so they
are turned back on the way out and upright on the way in. The names are also listed as
`Iptc4xmpExt:PersonInImage`, which tools without region support show.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

from facetrain import foreign
from facetrain.library.turns import region, stored_area

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "MPReg": "http://ns.microsoft.com/photo/1.2/t/Region#",  # Windows Photo Gallery's people
}
MAX_BYTES = 4 << 20  # a sidecar is a few kB; anything larger is not read
TOOLKIT = 'x:xmptk="facetrain"'  # what marks a sidecar as ours until another program rewrites it


def sidecar(width: int, height: int, faces: list[tuple[str, tuple]],
            orientation: int = 1) -> str:  # fmt: skip
    """The XMP text for one photo: (name, (x1, y1, x2, y2) in pixels of the upright photo,
    `width` × `height`) per face; `orientation`: the photo's EXIF orientation."""
    items = []
    for name, box in faces:
        cx, cy, w, h = stored_area(region(box, width, height), orientation)
        items.append(
            f'     <rdf:li><rdf:Description mwg-rs:Name={quoteattr(name)} mwg-rs:Type="Face">\n'
            f'      <mwg-rs:Area stArea:x="{cx:.6f}" stArea:y="{cy:.6f}" stArea:w="{w:.6f}"'
            f' stArea:h="{h:.6f}" stArea:unit="normalized"/>\n'
            "     </rdf:Description></rdf:li>\n"
        )
    people = "".join(
        f"     <rdf:li>{_text(n)}</rdf:li>\n" for n in dict.fromkeys(n for n, _ in faces)
    )
    decl = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items() if k not in ("x", "MPReg"))
    if orientation in (5, 6, 7, 8):  # stored on its side
        width, height = height, width
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{NS["x"]}" {TOOLKIT}>\n'
        f' <rdf:RDF xmlns:rdf="{NS["rdf"]}">\n'
        f'  <rdf:Description rdf:about="" {decl}>\n'
        '   <mwg-rs:Regions rdf:parseType="Resource">\n'
        f'    <mwg-rs:AppliedToDimensions stDim:w="{width}" stDim:h="{height}"'
        ' stDim:unit="pixel"/>\n'
        "    <mwg-rs:RegionList><rdf:Bag>\n"
        f"{''.join(items)}"
        "    </rdf:Bag></mwg-rs:RegionList>\n"
        "   </mwg-rs:Regions>\n"
        f"   <Iptc4xmpExt:PersonInImage><rdf:Bag>\n{people}"
        "   </rdf:Bag></Iptc4xmpExt:PersonInImage>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    )


def _text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def written_by_us(path: str | os.PathLike) -> bool:
    """A sidecar as `sidecar` wrote it: another program that rewrites one (digiKam,
    ExifTool, Lightroom) puts its own toolkit name in its place."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return TOOLKIT.encode() in head


def sidecar_of(photo: str | os.PathLike) -> Path | None:
    """The sidecar beside a photo: `IMG_1.jpg.xmp` (digiKam, Immich) or `IMG_1.xmp`
    (Lightroom), whichever exists."""
    p = Path(photo)
    for c in (p.with_name(p.name + ".xmp"), p.with_suffix(".xmp")):
        if c.is_file():
            return c
    return None


def read_names(path: str | os.PathLike) -> tuple[list[tuple[str, tuple]], list[str]]:
    """`names_in` an XMP file (a sidecar)."""
    return names_in(Path(path).read_bytes()[: MAX_BYTES + 1])


def names_in(data: bytes) -> tuple[list[tuple[str, tuple]], list[str]]:
    """(name, (cx, cy, w, h), normalised) of each named face region of an XMP packet —
    MWG's, whichever way a tool wrote them (attributes or elements), and Microsoft's
    (Windows Photo Gallery: `MPReg:Rectangle`, its top-left corner and size) — and the
    people it says are in the photo with no place (`Iptc4xmpExt:PersonInImage`: what
    osxphotos writes of Apple Photos' names, and Photo Mechanic). Raises ValueError for
    what is not XMP one can read (too large, a DOCTYPE, broken XML)."""
    root = foreign.xml_root(data, "XMP", MAX_BYTES)
    regions = []
    for d in root.iter():  # rdf:Description, or rdf:li with rdf:parseType="Resource"
        region = _mwg_region(d) or _microsoft_region(d)
        if region is not None:
            regions.append(region)
    people = []
    for bag in root.iter(f"{{{NS['Iptc4xmpExt']}}}PersonInImage"):
        people += [(li.text or "").strip() for li in bag.iter(f"{{{NS['rdf']}}}li")]
    return regions, list(dict.fromkeys(p for p in people if p))


def _mwg_region(d) -> tuple[str, tuple] | None:
    name = _field(d, "mwg-rs", "Name")
    kind = _field(d, "mwg-rs", "Type") or "Face"
    area = d.find(f"{{{NS['mwg-rs']}}}Area")
    if not name or kind != "Face" or area is None:
        return None
    try:
        return name, tuple(float(_field(area, "stArea", k)) for k in ("x", "y", "w", "h"))
    except (TypeError, ValueError):
        return None


def _microsoft_region(d) -> tuple[str, tuple] | None:
    name, rect = _field(d, "MPReg", "PersonDisplayName"), _field(d, "MPReg", "Rectangle")
    try:
        x, y, w, h = (float(v) for v in (rect or "").split(","))
    except ValueError:
        return None
    return (name, (x + w / 2, y + h / 2, w, h)) if name else None


def _field(el, ns: str, key: str) -> str | None:
    """An XMP property written as an attribute or as a child element."""
    tag = f"{{{NS[ns]}}}{key}"
    if tag in el.attrib:
        return el.attrib[tag]
    child = el.find(tag)
    return None if child is None else (child.text or "").strip()
