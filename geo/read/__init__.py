"""The read side: what the API serves from stored data and runs — risk profiles, features,
vector and raster tiles, exports, map classes — with disclosure control applied."""
