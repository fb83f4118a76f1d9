def query(context, sql: str, limit: int = 100):
    """The mock side: the same SELECT over a synthetic `cells` table (same columns, fake rows)."""
    import random

    rng = random.Random(2026)
    types = ["KC", "MBON", "PN", "LHN", "DAN"]
    regions = ["MB", "LH", "AL", "CX"]
    rows = [
        {
            "cell_id": 900000 + i,
            "cell_type": rng.choice(types),
            "region": rng.choice(regions),
            "volume_um3": round(rng.uniform(50, 900), 1),
            "synapses": rng.randint(10, 4000),
        }
        for i in range(200)
    ]
    return context.code.run_select(context, rows, sql, limit)
