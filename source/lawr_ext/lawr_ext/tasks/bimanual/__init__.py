"""Bimanual-Chunk: two ViperX-class arms (ALOHA layout), hand-over and insertion, kit-less Newton MuJoCo-Warp."""
