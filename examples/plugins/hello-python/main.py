"""Say hello: the smallest useful Warden plugin."""


def handler(event):
    name = event["name"].strip() or "stranger"
    return {"message": f"Hello, {name}!"}
