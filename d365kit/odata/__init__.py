"""The one OData layer both clients share."""
