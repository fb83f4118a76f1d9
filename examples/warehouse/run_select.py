def run_select(context, rows, sql, limit):
    """Answer one read-only SELECT over the table `cells` (given as dicts) with at most `limit`
    rows, in an in-memory SQLite database whose authorizer allows nothing but reading `cells`.
    Anything else is the caller's mistake: a PublicError 400 with SQLite's reason."""
    import sqlite3

    if not 1 <= limit <= 1000:
        raise context.PublicError("limit is between 1 and 1000")
    if not isinstance(sql, str) or not sql.lstrip().lower().startswith("select"):
        raise context.PublicError("only a single read-only SELECT over the table cells is accepted")
    columns = context.code.columns()
    casts = {"INTEGER": int, "REAL": float, "TEXT": str}
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE cells ({', '.join(f'{name} {kind}' for name, kind in columns)})")
    db.executemany(
        f"INSERT INTO cells VALUES ({', '.join('?' * len(columns))})",
        [[casts[kind](row[name]) for name, kind in columns] for row in rows],
    )

    def authorizer(action, arg1, arg2, database, trigger):
        if action == sqlite3.SQLITE_SELECT or action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and arg1 == "cells":
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    db.set_authorizer(authorizer)
    try:
        cursor = db.execute(sql)
        found = cursor.fetchmany(limit + 1)
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise context.PublicError(
            f"only a single read-only SELECT over the table cells is accepted ({exc})"
        ) from None
    finally:
        db.set_authorizer(None)
    return {
        "columns": [d[0] for d in cursor.description],
        "rows": [list(r) for r in found[:limit]],
        "truncated": len(found) > limit,
    }
