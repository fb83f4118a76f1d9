"""The baseline: a bare functions-framework function."""


def handle(request):
    return "hello"
