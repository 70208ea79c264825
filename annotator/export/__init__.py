"""Store -> results: a Hub dataset with a card, local Parquet/JSONL/CSV, and restore from the Hub.

One job per module; import a name from the module that holds it:

* `format`: the two tables (records, responses): names, columns, types, and rows to and from the store's types;
* `summary`: the totals of one export and its agreement, accumulated record by record;
* `tables`: both tables built from a store shard by shard, each record's consensus computed;
* `writers`: Parquet, JSONL and CSV sinks for those shards;
* `local`: the tables as files in a folder;
* `card`: the Hub dataset's README;
* `push_state`: what was last pushed where, across replicas and restarts;
* `hub`: `Exporter`, pushing both tables and the card to EXPORT_REPO in one commit, in the background;
* `restore`: an empty store filled from the latest Hub export;
* `token_scrub`: HF_TOKEN kept out of logs, status, errors and the card.
"""
