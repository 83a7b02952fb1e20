"""``autoseg report``: one self-contained HTML page (and a Markdown twin) with the evidence of a run."""
