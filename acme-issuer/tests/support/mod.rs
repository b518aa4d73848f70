pub mod pebble;
