pub use switchyard_engine as engine;
