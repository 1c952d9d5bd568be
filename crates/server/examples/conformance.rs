fn main(){println!("conformance example")}
