"""The downloads engine: triggers, resolvers, the task store, workers and fetching.

It imports nothing else from the project, so it can be tested alone.
"""
