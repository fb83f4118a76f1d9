def columns():
    """The warehouse's one table, `cells`: (column, SQLite type), the same on both sides."""
    return [
        ("cell_id", "INTEGER"),
        ("cell_type", "TEXT"),
        ("region", "TEXT"),
        ("volume_um3", "REAL"),
        ("synapses", "INTEGER"),
    ]
