"""A private photo library: every face found, stacked per person, named by the owner, then
recognised in new photos. Everything stays in one SQLite file next to the owner's photos;
the photos themselves are only ever read."""
