// An empty Python module: importing rcl_kernels._C loads this shared library, whose static
// initialisers register the operators with the dispatcher. No pybind11 needed.
#ifdef RCL_PYTHON_MODULE
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "rcl_kernels operator library (ops are reached through torch.ops.rcl_kernels)",
      -1,
      nullptr,
  };
  return PyModule_Create(&module_def);
}
}
#endif
