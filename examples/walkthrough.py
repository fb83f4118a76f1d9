# %% [markdown]
# # Gatehouse from Python: a researcher's and a data owner's journey
#
# A notebook as a script: each `# %%` is a cell (Jupyter, VS Code and PyCharm open it as a
# notebook; `python examples/walkthrough.py` runs it top to bottom). Against `make dev`:
#
#     make dev                                              # one terminal: the local stack
#     export OWNER_TOKEN=<the TOKEN make dev prints>         # another terminal
#     export RESEARCHER_TOKEN=$(make -s token EMAIL=researcher@example.com)
#     .venv/bin/python examples/walkthrough.py
#
# `make dev` seeds a private dataset `manc`, which researcher@example.com may read, and the
# twin endpoints of examples/warehouse: `warehouse.query` runs SQL over a table of cells, on
# fake rows (its mock side) for researchers and on the real rows (its private side) for the
# dataset's owners. The researcher never reads a private row: they prototype on the mock,
# submit code, and run it once after an owner approved it. (client/tests/test_client_walkthrough.py
# runs this file against the test session's stack.)

# %%
import os

from gatehouse import Gatehouse, ValidationError

URL = os.environ.get("GATEHOUSE_URL", "http://127.0.0.1:8080")
researcher = Gatehouse(URL, token=os.environ["RESEARCHER_TOKEN"])
print(researcher.whoami()["email"])
print(researcher.datasets.list())  # a Listing of Dataset records

# %% [markdown]
# ## The researcher: what is there, and what it takes
# `dir(researcher.twins)` (or `researcher.twins.<TAB>`) lists the endpoints; an endpoint's
# repr and `help()` show its description and parameters.

# %%
print([name for name in dir(researcher.twins) if not name.startswith("_")])
query = researcher.twins.warehouse.query
print(repr(query))
help(query)

# %% [markdown]
# ## Prototype on the mock side
# A reader's call goes to the mock side: fake rows of the same shape. A table comes back as a
# `Table` (`.to_dataframe()` with pandas). A wrong argument fails before the request.

# %%
sample = query(sql="SELECT region, count(*) AS cells FROM cells GROUP BY region ORDER BY region")
try:
    print(sample.to_dataframe())
except ImportError as missing:  # pandas is optional
    print(missing, sample.records(), sep="\n")
try:
    query(sql="SELECT 1", limit="ten")
except ValidationError as wrong:
    print(wrong)


# %% [markdown]
# ## Submit the analysis
# The code is a function whose parameters are endpoints. Defined in a file or a notebook cell,
# the function itself is submitted (its source as written); at a plain `>>>` prompt pass
# `code="def ...` instead.


# %%
def regional_means(query):
    answer = query(sql="SELECT region, avg(synapses) FROM cells GROUP BY region")
    return {region: round(mean, 1) for region, mean in answer["rows"]}


print(regional_means(researcher.twins.warehouse.query))  # on the mock rows, locally over HTTP
request = researcher.twins.submit(
    regional_means, endpoints={"query": researcher.twins.warehouse.query}, reason="figure 2: mean synapses"
)
print(request)

# %% [markdown]
# ## The owner: review, try on the mock, decide
# The owner lists what waits for them, reads the code with its endpoints and what an approval
# binds, runs it on the mock sides in the server's sandbox (not on their machine, and without
# using up the single run), then approves or denies with a reason.

# %%
owner = Gatehouse(URL, token=os.environ["OWNER_TOKEN"])
pending = owner.twins.requests.list(status="pending")
review = next(r for r in pending if r.id == request.id)
review.show()
print("on the mock sides:", review.try_on_mock())
review = review.approve("aggregates only")
print(review.status, review.decision_reason)

# %% [markdown]
# ## The researcher runs it, once
# The approved code runs against the private side; the result is the governed private result.

# %%
result = request.run()
print("private result:", result)
print(request.refresh().status)

# %% [markdown]
# ## The owner reads what the run did
# The run record: what the code printed, and the endpoint calls it made.

# %%
record = owner.twins.requests.get(request.id).record["run"]
print(record["status"], len(record["calls"]), "endpoint call(s)")
researcher.close()
owner.close()
