fn main() {} // placeholder until the store bench lands
