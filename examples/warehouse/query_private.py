def query(context, sql: str, limit: int = 100):
    """The private side: the real `cells` table, a CSV object in an S3 bucket; the endpoint,
    bucket, key and credentials are this side's settings."""
    import csv
    import io

    import boto3

    s = context.settings
    client = boto3.client(
        "s3",
        endpoint_url=s.get("endpoint_url") or None,
        region_name=s["region_name"],
        aws_access_key_id=s["aws_access_key_id"],
        aws_secret_access_key=s["aws_secret_access_key"],
    )
    body = client.get_object(Bucket=s["bucket"], Key=s["key"])["Body"].read().decode()
    return context.code.run_select(context, list(csv.DictReader(io.StringIO(body))), sql, limit)
